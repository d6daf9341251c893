"""streamlearn's version, where every part may read it without importing the package's face."""

__version__ = "0.1.0"
