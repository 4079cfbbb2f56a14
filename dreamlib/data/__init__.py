"""Data: synthetic rain, shipped sample images, paired-folder datasets."""
