# ruff: noqa: E501
"""A fixed sample that calibrates int8 models and runs the quality gate: the same on every machine.

English of mixed length (a word to a long paragraph, so short and long sequences are both calibrated
and checked) on many topics, prose next to the technical text people also embed (commands, code,
logs, markup, tables, numbers), and a separate set of queries for the retrieval check. int8
calibration needs that spread: calibrated on prose alone, MiniLM's int8 model lost accuracy on
technical text (min cosine 0.978 instead of 0.994 on a README word sample).
Images are drawn deterministically (gradients, shapes, stripes, noise) from a fixed seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

_DOCUMENTS = """\
A red bicycle leans against a brick wall.
The train to Lyon leaves at 7:42 from platform 3.
Artificial intelligence was founded as an academic discipline in 1956.
Milvus is a vector database built for similarity search over billions of embeddings.
How do I reset my password if I no longer have access to my email?
Preheat the oven to 200 degrees, then bake the bread for thirty-five minutes until the crust is golden.
Photosynthesis converts light energy into chemical energy stored in glucose.
The quarterly report shows revenue up 12% while operating costs stayed flat.
She played the cello in the city orchestra for twenty years before she started teaching.
Water boils at 100 degrees Celsius at sea level, but at a lower temperature in the mountains.
Return policy: unused items can be returned within 30 days with the original receipt.
The mitochondria is the powerhouse of the cell.
dog
Cats sleep for up to sixteen hours a day.
The Amazon rainforest produces a large share of the world's oxygen and is home to countless species.
To install the package, run pip install and then import it in your script.
An error occurred while saving the file: the disk is full.
The committee postponed the vote until the budget figures had been checked by an independent auditor.
Jupiter is the largest planet in the solar system; a day there lasts about ten hours.
Fresh tomatoes, basil, olive oil and a pinch of salt make a simple summer salad.
The museum is closed on Mondays and public holidays.
Machine translation systems learn to map sentences from one language to another using parallel text.
He forgot his umbrella on the bus and walked home in the rain.
The striker scored twice in the second half and the home team won three to one.
Climate change is raising sea levels through melting glaciers and the thermal expansion of water.
Please find attached the signed contract and the invoice for March.
The bridge was designed to sway slightly in strong winds instead of resisting them rigidly.
Quantum computers use qubits, which can be in a superposition of zero and one.
Our hotel room overlooked the harbour, and every morning we watched the fishing boats come in.
The library lends books, music and films, and offers free internet access to members.
A balanced diet includes vegetables, whole grains, protein and healthy fats.
Symptoms of the flu include fever, a sore throat, muscle aches and fatigue.
The startup raised forty million dollars to expand its delivery network across Europe.
Wolves live in packs led by a breeding pair and hunt large animals such as deer and elk.
Save the document before you close the window, or your changes will be lost.
The novel follows three generations of a family who run a small bakery in Naples.
Lightning is a sudden electrostatic discharge between clouds or between a cloud and the ground.
Tickets for the concert sold out within minutes of going on sale.
Regular exercise lowers the risk of heart disease and improves sleep and mood.
The database index speeds up queries but slows down writes and uses extra disk space.
Mount Everest, on the border of Nepal and China, is the highest mountain above sea level.
Coffee beans are the roasted seeds of the coffee plant's red berries.
The customer asked whether the laptop could be upgraded to thirty-two gigabytes of memory.
Vaccines train the immune system to recognise a virus without causing the disease.
The old lighthouse has been turned into a small museum about shipwrecks on this coast.
Interest rates were left unchanged at the central bank's meeting on Thursday.
Honeybees communicate the direction of flowers to each other with a waggle dance.
The software update fixes a security flaw that allowed attackers to read private messages.
Children learn languages fastest when they hear them spoken every day at home.
The recipe calls for two cups of flour, one egg, and a cup of milk.
A neural network is trained by adjusting its weights to reduce the error on examples.
The city plans to add two hundred kilometres of protected bike lanes by the end of the decade.
Shakespeare wrote thirty-seven plays, including Hamlet, Macbeth and King Lear.
Black holes form when massive stars collapse under their own gravity at the end of their lives.
The printer on the third floor is out of toner again.
Our flight was delayed by four hours because of fog, so we missed the connection in Frankfurt.
Sparse retrieval scores documents by the words they share with the query, while dense retrieval compares learned vectors.
Green tea contains less caffeine than coffee and is rich in antioxidants.
The marathon route passes the cathedral, follows the river for ten kilometres and finishes in the old market square.
Volcanoes form where tectonic plates pull apart or where one plate slides beneath another.
The judge ruled that the evidence had been collected illegally and could not be used at trial.
Penguins cannot fly, but they are excellent swimmers and can dive deeper than two hundred metres.
When the power went out, the whole street gathered in the square with candles and guitars, and nobody seemed in a hurry for the lights to come back.
The history of the printing press is a story about cheap paper, metal type and the sudden spread of ideas. Before Gutenberg, books were copied by hand and were rare and expensive; within fifty years of his first Bible, printers in more than two hundred European cities had produced millions of volumes, and pamphlets carried arguments about religion, science and politics faster than any authority could answer them.
Setting up the home network took most of the afternoon. The router had to be placed in the hallway so that the signal reached the bedrooms, the old switch in the study was replaced because it only ran at one hundred megabits, and the printer needed a fixed address before the laptops would find it again. In the end every device connected, and the video calls stopped freezing.
Coral reefs cover less than one percent of the ocean floor but shelter about a quarter of all marine species. They are built over thousands of years by tiny animals that live together with algae, and they are very sensitive to temperature: when the water stays too warm for a few weeks, the corals expel the algae, turn white and may die. Protecting reefs means limiting warming, pollution and overfishing at the same time.
The onboarding guide explains the first week for new engineers: on Monday you receive your laptop and accounts, on Tuesday you pair with a mentor on a small bug, on Wednesday you attend the architecture overview, and by Friday you are expected to have shipped one change to production. Questions are welcome at any time in the team channel, and nobody expects you to know the codebase yet; reading the design documents and asking about anything unclear is the best use of the first days.
In the small village the market opens at dawn on Saturdays. Farmers bring cheese, eggs, honey, apples and bread baked that morning; a man sells knives he sharpens while you wait; children run between the stalls with paper cones of roasted chestnuts in winter and cherries in summer. By noon the square is empty again, swept clean, and the only sign of the market is the smell of coffee from the café on the corner, where the farmers count their money and argue about the weather and the price of feed.
pip install "multiembed[fast]" && multiembed encode --modality text notes.txt -o notes.parquet
def cosine(a, b): return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
ERROR 2024-03-18 14:02:11 worker-3: connection refused (host=10.0.4.17, port=19530), retrying in 5 s
| model | dim | metric | batch size |
python pandas dataframe merge on two columns
{"id": 42, "name": "red bicycle", "tags": ["outdoor", "sport"], "price": 129.99}
See `load()` for the options; `--device auto` picks CUDA, then MPS, then the CPU.
/home/alice/projects/search/data/photos/2023-08-14_beach_0042.jpg
SELECT title, year FROM films WHERE rating > 8.5 ORDER BY year DESC LIMIT 10;
Changelog: the empty-file case is now handled before calling tokenizer.encode() (see issue #1187).
kubectl get pods -n search --field-selector=status.phase=Running
Returns: an (n, dim) float32 array; rows are L2-normalised unless normalize=False.
git commit -m "Fix off-by-one error in the pagination of search results"
The README lists three commands: encode, index and search, each with --help.
Warning: deprecated since v2.3, use the new API (https://example.com/docs/migration) instead.
- [x] write tests  - [ ] update docs  - [ ] release 0.4.1
HNSW, IVF_FLAT, FLAT, AUTOINDEX; metric COSINE or L2 or IP
for i in range(10): print(i ** 2, end=", ")
Price: $1,299.00 (incl. VAT) — ships in 3-5 business days; free returns within 30 days.
Q3 FY2023: revenue 4.2B (+8% YoY), EPS 1.37, guidance raised to 17.5B-17.8B.
ssh -i ~/.ssh/id_ed25519 deploy@build-01.internal 'sudo systemctl restart api'
import torch; model = torch.hub.load("pytorch/vision", "resnet50", weights="IMAGENET1K_V2")
Traceback (most recent call last): File "main.py", line 12, in <module> KeyError: 'user_id'
batch_size=32, max_seq_length=256, normalize_embeddings=True, show_progress_bar=False
vector database, ANN index, recall@10, latency p99, throughput QPS, sharding, replicas
RFC 7231 defines the semantics of HTTP/1.1 methods such as GET, POST, PUT and DELETE.
The function raises ValueError when the input is empty and TypeError when it is not a string.
CREATE INDEX idx_users_email ON users (email); -- speeds up login lookups
docker run --rm -p 19530:19530 -v $(pwd)/volumes:/var/lib/milvus milvusdb/milvus:latest
Tags: #travel #photography #sunset #beach #summer2023
<div class="card"><h2>Red bicycle</h2><p>Lightweight aluminium frame, 21 gears.</p></div>
Step 1: unplug the router. Step 2: wait 30 seconds. Step 3: plug it back in and wait for the green light.
ISBN 978-0-14-143951-8, Penguin Classics, 2003, 480 pages, paperback
chmod 755 deploy.sh && ./deploy.sh --env=production --dry-run
The API returns HTTP 429 Too Many Requests when the client exceeds 100 calls per minute.
x = [1, 2, 3]; y = {k: v for k, v in zip("abc", x)}; assert y["b"] == 2
Meeting notes 12/03: agreed to ship v1.2 on Friday; Bob owns the migration, Carol the release notes.
Embedding models map text, images or audio to vectors so that similar items end up close together. A search system embeds every document once, stores the vectors in an index, and at query time embeds the question and looks up its nearest neighbours. The quality of the results depends on the model, on how the text is split into passages, and on whether queries and documents are encoded the same way; speed depends on the model size, the hardware and the numeric precision used for inference.
"""

_QUERIES = """\
bicycle parked by a wall
when does the train leave
history of artificial intelligence
vector similarity search database
forgot my password
how long to bake bread
how do plants make energy from sunlight
company revenue growth
symptoms of influenza
largest planet
animals that live in packs
airport delay missed connection
printing press and the spread of books
wifi router setup at home
why are coral reefs dying
how does semantic search with embeddings work
restart a service over ssh
sql query top rated films
python exception missing dictionary key
"""

DOCUMENTS: tuple[str, ...] = tuple(line for line in _DOCUMENTS.splitlines() if line.strip())
QUERIES: tuple[str, ...] = tuple(line for line in _QUERIES.splitlines() if line.strip())


def sample_images(count: int = 48, size: int = 256, seed: int = 20240601) -> list[Image.Image]:
    """Deterministic RGB images with structure a backbone reacts to: gradients, shapes, stripes, noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    generator = np.random.default_rng(seed)
    images: list[Image.Image] = []
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for index in range(count):
        base = generator.uniform(0, 255, 3)
        tilt = generator.uniform(-120, 120, (3, 2))
        pixels = base[:, None, None] + tilt[:, 0, None, None] * xs + tilt[:, 1, None, None] * ys
        if index % 3 == 1:
            period = generator.uniform(6, 40)
            pixels = pixels + 60 * np.sin(2 * np.pi * (xs + ys) * size / period)
        pixels = pixels.transpose(1, 2, 0) + generator.normal(0, 4 + index % 5 * 6, (size, size, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(int(generator.integers(1, 6))):
            x0, y0 = generator.uniform(0, size * 0.7, 2)
            x1, y1 = x0 + generator.uniform(20, size * 0.5), y0 + generator.uniform(20, size * 0.5)
            colour = tuple(int(value) for value in generator.integers(0, 256, 3))
            shape = draw.ellipse if generator.random() < 0.5 else draw.rectangle
            shape((float(x0), float(y0), float(x1), float(y1)), fill=colour)
        images.append(image)
    return images
