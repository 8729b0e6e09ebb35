"""Model definitions. diffusers supplies the parts that match the official numbers; the rest is here."""
