"""qstar.improve"""
