from sublim_toy.cli import entry_point

entry_point()
