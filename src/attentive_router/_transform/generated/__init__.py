"""Code generated from ``spec/`` by ``make generate``; do not edit. See ``codegen/``."""
