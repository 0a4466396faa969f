"""GRAM (gradient-regulated meta-prompt learning): meta-training data, regulator and meta-step."""
