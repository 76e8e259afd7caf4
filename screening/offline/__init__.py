"""Offline batch work with polars: scenario generator, replay/backtest, regulatory reports."""
