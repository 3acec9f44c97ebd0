"""annojax: individual-annotator speech emotion recognition in JAX/Flax.

Pre-train one output head per annotator on a large population, then map a new
annotator to the most similar pre-trained head from a handful of ratings.
"""

__version__ = "0.1.0"
