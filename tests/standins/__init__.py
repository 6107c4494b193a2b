"""Stand-ins for parties we cannot run here (the province); the product never imports them."""
