"""pymesh.api"""
