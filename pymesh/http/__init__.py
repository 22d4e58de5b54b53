"""pymesh.http"""
