"""attnunet: Attention U-Net (Oktay et al., 2018) for 3D pancreas CT segmentation."""

__version__ = "0.1.0"
