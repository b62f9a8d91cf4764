"""MOS Annotator: a Label Studio ML backend that predicts Mean Opinion Scores from few ratings."""
