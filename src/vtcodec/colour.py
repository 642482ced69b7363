"""The one colour matrix of the project: BT.601 full range (JFIF) RGB -> Y, Cb, Cr rows.

Used by the metrics (luma SSIM, Cb/Cr PSNR, chroma spread) and by ConvTok's YCbCr input."""

BT601_YCC = (
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)
