"""The ocrdash host agent: inventory, safe pruning and freeing of Aspose.OCR model files."""

__version__ = "0.1.0"
