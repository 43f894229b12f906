"""How the judge corpus and probe v2 were written: per-writer plans and the checker writers ran."""
