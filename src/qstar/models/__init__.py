"""qstar.models"""
