"""Ridge enhancement: orientation field, then oriented Gabor filtering, optionally binarised.

A print from a dry finger, a wet one, a worn sensor or our generator differ in gray levels,
contrast, pores and noise; after oriented band-pass filtering at the ridge period they are all
ridges of one width on a flat background. That is the classical way to make prints from any
source look alike (Hong, Wan and Jain 1998), and it is what a learned signature trained on
synthetic prints needs to see the same thing on skin.

The stage, on a gray (H, W) image in [0, 1] at the preprocessing resolution:

1. orientation field: gradients after a small gaussian, the structure tensor smoothed over
   ``orient_sigma`` pixels, the gradient direction ``0.5 * atan2(2 Jxy, Jxx - Jyy)`` per pixel;
2. a bank of ``angles`` even Gabor kernels at the ``period`` (pixels) of the ridges, envelope
   ``sigma``, each made zero-mean and quantised to integers in [-127, 127]
   (``gabor_bank``): the same integer weights a microcontroller would use;
3. each pixel takes the response of the kernel nearest its orientation;
4. outside the foreground (``preprocess.foreground_mask``) the response is 0;
5. the response is scaled by its ``scale_quantile`` quantile of magnitude inside the foreground
   and mapped to ``0.5 + 0.5 * clip(r, -1, 1)``: ridges stay dark, background is mid gray; or,
   when ``binarise``, to 0 (ridge), 1 (valley) and 0.5 (background).

Every parameter travels in the ModelCard (``PreprocessConfig.enhance_*``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import fft, ndimage


# Integer kernel weights span [-KERNEL_LEVELS, KERNEL_LEVELS]: int8, ready for an MCU port.
KERNEL_LEVELS = 127


@functools.lru_cache(maxsize=16)
def gabor_bank(period: float, sigma: float, angles: int) -> np.ndarray:
    """Integer even Gabor kernels (angles, K, K), int16 in [-127, 127], one per gradient angle.

    Kernel ``k`` responds to ridges whose gradient points at ``k * pi / angles``: its wave
    runs along that direction with the given ``period`` (pixels) under an isotropic gaussian
    envelope of ``sigma`` pixels. Each kernel is made zero-mean before quantisation (a flat
    patch gives no response) and scaled so its largest weight is 127. The parameters are checked
    where they are read, by ``PreprocessConfig``'s rules (``preprocess._check_config``).
    """
    radius = int(math.ceil(3.0 * sigma))
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1].astype(np.float64)
    envelope = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    bank = np.empty((angles, 2 * radius + 1, 2 * radius + 1), np.int16)
    for k in range(angles):
        phi = k * math.pi / angles
        u = x * math.cos(phi) + y * math.sin(phi)
        kernel = envelope * np.cos(2.0 * math.pi * u / period)
        kernel -= envelope * (kernel.sum() / envelope.sum())  # zero-mean, same envelope
        bank[k] = np.round(kernel * (KERNEL_LEVELS / np.abs(kernel).max()))
    bank.setflags(write=False)
    return bank


def structure_tensor(gray: np.ndarray, pre_sigma: float, sigma: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Jxx, Jyy, Jxy): Sobel gradients after a gaussian of ``pre_sigma`` pixels, their
    products smoothed by a gaussian of ``sigma`` pixels. The orientation field's raw material."""
    smooth = ndimage.gaussian_filter(gray.astype(np.float64), pre_sigma)
    gy = ndimage.sobel(smooth, axis=0)
    gx = ndimage.sobel(smooth, axis=1)
    return (ndimage.gaussian_filter(gx * gx, sigma), ndimage.gaussian_filter(gy * gy, sigma),
            ndimage.gaussian_filter(gx * gy, sigma))


def orientation(gray: np.ndarray, orient_sigma: float) -> np.ndarray:
    """Gradient direction in [0, pi) per pixel: the normal to the ridges."""
    jxx, jyy, jxy = structure_tensor(gray, 1.0, orient_sigma)
    return np.mod(0.5 * np.arctan2(2.0 * jxy, jxx - jyy), math.pi)


@functools.lru_cache(maxsize=16)
def _bank_spectrum(period: float, sigma: float, angles: int, fy: int, fx: int) -> np.ndarray:
    """The flipped bank's real FFT at (fy, fx): correlation by multiplication."""
    bank = gabor_bank(period, sigma, angles)
    spectrum = fft.rfft2(bank[:, ::-1, ::-1].astype(np.float64), (fy, fx))
    spectrum.setflags(write=False)
    return spectrum


def _responses(gray: np.ndarray, period: float, sigma: float, angles: int) -> np.ndarray:
    """Every kernel's response (angles, H, W) on the edge-mirrored image, by one FFT.

    The same numbers as ``scipy.ndimage.correlate(gray - mean, kernel, mode="reflect") / 127``.
    """
    h, w = gray.shape
    r = gabor_bank(period, sigma, angles).shape[1] // 2
    padded = np.pad(gray.astype(np.float64) - float(gray.mean()), r, mode="symmetric")
    fy, fx = fft.next_fast_len(h + 4 * r), fft.next_fast_len(w + 4 * r, real=True)
    full = fft.irfft2(fft.rfft2(padded, (fy, fx))[None]
                      * _bank_spectrum(period, sigma, angles, fy, fx), (fy, fx))
    return full[:, 2 * r:2 * r + h, 2 * r:2 * r + w] / KERNEL_LEVELS


def enhance(gray: np.ndarray, mask: np.ndarray, *, period: float, sigma: float, angles: int,
            orient_sigma: float, scale_quantile: float, binarise: bool) -> np.ndarray:
    """The enhanced float32 (H, W) image in [0, 1] of ``gray`` (H, W) with foreground ``mask``."""
    period, sigma, angles = float(period), float(sigma), int(angles)
    index = np.rint(orientation(gray, orient_sigma) * (angles / math.pi)).astype(np.int64) % angles
    response = np.take_along_axis(_responses(gray, period, sigma, angles), index[None], axis=0)[0]
    response[~mask] = 0.0
    if binarise:
        out = np.where(response < 0.0, 0.0, 1.0)
        out[~mask] = 0.5
        return out.astype(np.float32)
    inside = np.abs(response[mask]) if mask.any() else np.abs(response).ravel()
    scale = max(float(np.quantile(inside, scale_quantile)), 1e-6)
    return (0.5 + 0.5 * np.clip(response / scale, -1.0, 1.0)).astype(np.float32)


__all__ = ["KERNEL_LEVELS", "enhance", "gabor_bank", "orientation", "structure_tensor"]
