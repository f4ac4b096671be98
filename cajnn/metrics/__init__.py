"""Evaluation metrics of docs/design.md "Test protocol" (paper IV-B): PSNR / SSIM on Y."""

from .psnr_ssim import psnr, psnr_y, rgb_to_y, ssim, ssim_y

__all__ = ["rgb_to_y", "psnr", "psnr_y", "ssim", "ssim_y"]
