"""pymesh.control"""
