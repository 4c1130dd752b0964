"""qstar.viz"""
