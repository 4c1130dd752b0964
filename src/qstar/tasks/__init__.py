"""qstar.tasks"""
