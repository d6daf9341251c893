"""Experts: a network, its optimizer and its loss, learning one regime of the stream."""

from streamlearn.core.experts.expert import NeuralExpert, build_expert

__all__ = ["NeuralExpert", "build_expert"]
