"""`magicanimate train`: MagicAnimate's two training stages (paper section 3.4) on the engine's own modules."""
