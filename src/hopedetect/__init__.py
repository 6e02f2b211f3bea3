"""hopedetect: AI-generated text detection with a HOPE (Nested Learning) memory head, baselines and stacking."""
__version__ = "0.1.0"
