"""Data layer: TFDS builder, dataset preparation and the input pipeline."""
