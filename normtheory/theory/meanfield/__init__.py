"""Mean-field predictions at initialisation and their Monte Carlo measurement."""
