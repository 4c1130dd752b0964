"""qstar.train"""
