"""Item text -> cached LLM embeddings (RecBole atomic files), resumable.

    python dataset_scripts/embed_items.py --dataset NAME --data_path DIR --provider local|openai|tfidf

See ``python dataset_scripts/embed_items.py --help`` and recbole_faerec/embeddings/.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_faerec.embeddings.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
