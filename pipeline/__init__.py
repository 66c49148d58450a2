"""happyhome: scoring rounds of the 社区高质量发展幸福家园行动."""

__version__ = "0.1.0"
