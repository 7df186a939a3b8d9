"""s3dgs: 3D Gaussian Splatting trained with monocular depth priors."""
