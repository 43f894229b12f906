"""Safety classifiers: a recipe with a ``[classifier]`` table trains a sequence classifier on
safe/unsafe (context, response) pairs, reports held-out accuracy and F1, and saves a model that the
``hf_classifier`` scorer loads by path (for evaluation, negative mining and reranking)."""

from losscraft.classifier.parse import (is_classifier_recipe, is_classifier_recipe_file,
                                        load_classifier_recipe, parse_classifier_recipe)
from losscraft.classifier.schema import ClassifierRecipe
from losscraft.classifier.validate import validate_classifier_recipe

__all__ = ["ClassifierRecipe", "ClassifierResult", "is_classifier_recipe",
           "is_classifier_recipe_file", "load_classifier_recipe", "parse_classifier_recipe",
           "train_classifier", "validate_classifier_recipe"]


def __getattr__(name: str):
    # training pulls in transformers and the trainer; telling recipes apart must stay cheap
    if name in ("train_classifier", "ClassifierResult"):
        from losscraft.classifier import train
        return getattr(train, name)
    raise AttributeError(f"module 'losscraft.classifier' has no attribute '{name}'")
