"""MOS from the most similar rated images by LPIPS / SSIM / MS-SSIM: the one place prediction needs torch."""
