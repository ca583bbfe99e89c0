from recbole_faerec.config.configurator import Config

__all__ = ["Config"]
