"""Who may call, and what they may spend. Virtual keys, budgets and audit plug in here."""
