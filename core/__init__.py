"""Shared vocabulary of Clearance: principals, ACLs, documents, settings, errors.

`core` imports nothing from the rest of the product.
"""
