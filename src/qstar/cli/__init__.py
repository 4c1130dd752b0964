"""qstar.cli"""
