# The PyTorch side of lumen_bench_infer (Debian's python3-torch, python3-torchvision,
# python3-pil):
#
#   torch_infer.py script <model.pt>
#       saves torchvision's ResNet-18 (seeded weights, nothing downloaded) as TorchScript: the
#       one model every pipeline of the benchmark runs.
#   torch_infer.py dataloader <image dir> <n> <model.pt> <batch> <threads> <out.jsonl>
#       what a user writes without Lumen: a DataLoader whose worker decodes with Pillow,
#       resizes to 224 x 224 and normalises with ImageNet's mean and std, the TorchScript model
#       on `threads` threads, predictions written as JSON lines. Prints images per second.
import json
import sys
import time

import torch
import torchvision
from PIL import Image
from torchvision import transforms


def script(path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    torch.jit.script(net).save(path)


class Images(torch.utils.data.Dataset):
    def __init__(self, folder, n):
        self.paths = ["%s/img%d.jpg" % (folder, i) for i in range(n)]
        self.prepare = transforms.Compose([
            transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            return self.prepare(im.convert("RGB")), self.paths[i]


def dataloader(folder, n, model_path, batch, threads, out_path):
    torch.set_num_threads(threads)
    # The model as Lumen's pipelines run it (LoadTorchScript's optimize_for_inference).
    model = torch.jit.optimize_for_inference(torch.jit.load(model_path).eval())
    loader = torch.utils.data.DataLoader(Images(folder, n), batch_size=batch, num_workers=1)
    start = time.perf_counter()
    rows = 0
    with torch.no_grad(), open(out_path, "w") as out:
        for x, paths in loader:
            labels = model(x).argmax(1).tolist()
            for p, label in zip(paths, labels):
                out.write(json.dumps({"path": p, "label": label}) + "\n")
            rows += len(labels)
    print(rows / (time.perf_counter() - start), rows)


if __name__ == "__main__":
    if sys.argv[1] == "script":
        script(sys.argv[2])
    else:
        dataloader(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]),
                   sys.argv[7])
