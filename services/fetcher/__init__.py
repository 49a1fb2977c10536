"""The fetcher service: HF / Kaggle / URL / upload connectors and the encrypted artifact cache."""
