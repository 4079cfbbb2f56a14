"""Experiment runners: each module reproduces one table or figure and writes it under ``results/``."""
