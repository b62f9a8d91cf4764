"""Developer tools: local servers, the sample dataset, test fakes, benchmarks. Never imported by the service."""
