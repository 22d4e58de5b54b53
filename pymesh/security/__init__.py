"""pymesh.security"""
