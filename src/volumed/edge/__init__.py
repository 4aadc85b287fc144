"""The network edge in front of the API: the listening socket and the guard that keeps
idle connections and one address's crowd of connections from taking every slot."""
