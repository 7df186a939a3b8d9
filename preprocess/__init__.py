"""Depth priors for 3DGS: 16-bit depth PNGs from Depth Anything V2, its Space, and Video Depth Anything."""
