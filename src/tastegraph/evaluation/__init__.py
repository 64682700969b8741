"""Offline evaluation of search quality through the product's own pipeline."""

from tastegraph.evaluation.metrics import average_precision_at_k, recall_at_k
from tastegraph.evaluation.search_eval import evaluate_captions, evaluate_retrieval

__all__ = ["average_precision_at_k", "evaluate_captions", "evaluate_retrieval", "recall_at_k"]
