// Batch inference with lumen::data: JPEG files -> decode and resize (read tasks) -> crop and
// normalise (tasks) -> ResNet in a pool of actors -> predictions as JSON lines.
//
//   image_classification                      # 200 generated photos, ResNet-18, local cluster
//   image_classification --images DIR --model resnet.pt --out preds/ --actors 2
//
// Without --images it makes its own photo-like JPEGs; without --model it builds ResNet-18 in
// C++ with seeded random weights (nothing is downloaded; --model takes a TorchScript file, e.g.
// torch.jit.script(torchvision.models.resnet50()).save("resnet.pt")).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "lumen/data/dataset.h"
#include "lumen/data/image.h"
#include "lumen/data/torch.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;

// Decoded at 256 x 256 by ReadImages; here the centre 224 x 224, as float32 {3, 224, 224}.
ld::Batch Preprocess(const ld::Batch& in) {
  return ld::NormalizeImages(ld::CenterCropImages(in, {224, 224}));
}
LUMEN_REMOTE(Preprocess);

// One per actor: the model is loaded (or built) once, then serves batches.
class Classifier {
 public:
  explicit Classifier(const std::string& model_file) : device_(ld::SetUpTorchForActor()) {
    if (!model_file.empty()) {
      script_ = ld::LoadTorchScript(model_file, device_, {.optimize_for_inference = true});
    } else {
      torch::manual_seed(0);
      net_ = ld::ResNet(18);
      net_->eval();
      net_->to(device_);
    }
  }
  ld::Batch operator()(const ld::Batch& in) {
    torch::NoGradGuard no_grad;
    torch::Tensor x = ld::TensorView(in, "tensor").to(device_);  // no copy on the CPU
    torch::Tensor logits = script_ ? script_->forward({x}).toTensor() : net_->forward(x);
    torch::Tensor probs = torch::softmax(logits, 1);
    auto [score, label] = probs.max(1);
    ld::Batch out = ld::WithTensor(in.SelectColumns({"path"}), "label", label);
    return ld::WithTensor(out, "score", score);
  }

 private:
  torch::Device device_;
  std::optional<torch::jit::Module> script_;
  torch::nn::Sequential net_{nullptr};
};
LUMEN_DATA_CALLABLE(Classifier, std::string);

// Photo-like pictures (smooth colours, some texture) as JPEGs of about 500 x 375.
void MakeImages(const std::string& dir, int n) {
  std::vector<ld::Image> images;
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) {
    ld::Image im{375, 500, 3, std::vector<uint8_t>(375 * 500 * 3)};
    for (int64_t y = 0; y < im.height; ++y) {
      for (int64_t x = 0; x < im.width; ++x) {
        uint8_t* p = &im.pixels[static_cast<size_t>((y * im.width + x) * 3)];
        p[0] = static_cast<uint8_t>(127 + 120 * std::sin(0.02 * x + 0.3 * i));
        p[1] = static_cast<uint8_t>(127 + 120 * std::cos(0.03 * y + 0.1 * i));
        p[2] = static_cast<uint8_t>((x * y + i * 97) % 251);
      }
    }
    images.push_back(std::move(im));
    names.push_back("photo" + std::to_string(i) + ".jpg");
  }
  std::vector<ld::Batch> blocks;
  for (size_t start = 0; start < images.size(); start += 25) {
    std::vector<ld::ImageView> views;
    std::vector<std::string> paths;
    for (size_t i = start; i < std::min(images.size(), start + 25); ++i) {
      views.push_back(images[i].view());
      paths.push_back(names[i]);
    }
    blocks.push_back(ld::BatchBuilder().AddString("path", paths).AddImages("image", views).Build());
  }
  ld::FromBatches(blocks).WriteImages(dir, {.format = "jpeg", .quality = 90});
}

int main(int argc, char** argv) {
  std::string images, model, out = "predictions";
  int actors = 1, count = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--images")
      images = value;
    else if (flag == "--model")
      model = value;
    else if (flag == "--out")
      out = value;
    else if (flag == "--actors")
      actors = std::atoi(value.c_str());
    else if (flag == "--count")
      count = std::atoi(value.c_str());
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  lumen::Init();  // the embedded local cluster (or LUMEN_ADDRESS)
  if (images.empty()) {
    images = (std::filesystem::temp_directory_path() / "lumen-example-images").string();
    std::filesystem::remove_all(images);
    MakeImages(images, count);
    std::cout << "made " << count << " JPEGs in " << images << "\n";
  }
  ld::Dataset preds =
      ld::ReadImages(images, {.size = {256, 256}, .mode = ld::ImageMode::kRGB})
          .MapBatches(Preprocess)
          .MapBatches<Classifier>({.batch_size = 32, .concurrency = actors, .num_cpus = 1}, model);
  try {
    ld::WriteResult r =
        preds.WriteJson(out, {.rows_per_file = 100, .mode = ld::WriteMode::kOverwrite});
    std::cout << preds.Stats() << "wrote " << r.files_written << " files of predictions to " << out
              << "/ (path, label, score per image)\n";
  } catch (const std::exception& e) {  // an image that does not decode, a model that does not load
    std::cerr << "image_classification: " << e.what() << "\n";
    lumen::Shutdown();
    return 1;
  }
  lumen::Shutdown();
  return 0;
}
