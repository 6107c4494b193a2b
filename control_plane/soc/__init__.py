"""The SOC engine. So far: the inline decision interface the operation gate calls."""
