"""Importing PyTorch stacked-hourglass checkpoints.

A PyTorch network with the reference's graph and parameter names
(`triplet_pose.models.torch_reference`) is saved in the published layout
({'state_dict': {'module.model.' + name: tensor}, ...}); its import must give
the same outputs in eval mode, and broken checkpoints must be refused with
the name of the offending tensor. Needs torch (`pip install -e
'.[test,peers]'`): skipped without it locally, with the reason; under
CI=true a missing torch fails the run (tests/peers.py).
"""

import numpy as np
import pytest

import peers

torch = peers.require("torch", why="the PyTorch checkpoint import tests")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from launch import import_torch  # pylint: disable=g-import-not-at-top,wrong-import-position
from triplet_pose import workdir as workdir_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from triplet_pose.models import StackedHourglass  # pylint: disable=g-import-not-at-top,wrong-import-position
from triplet_pose.models import torch_import  # pylint: disable=g-import-not-at-top,wrong-import-position
from triplet_pose.models import torch_reference  # pylint: disable=g-import-not-at-top,wrong-import-position


def _reference(num_stacks, num_features, seed=0):
  """A reference network in eval mode with non-trivial batch-norm statistics."""
  torch.manual_seed(seed)
  net = torch_reference.posenet(num_stacks, num_features=num_features)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
        m.num_batches_tracked.fill_(1000)
  return net.eval()


def _published(net):
  """The layout of the published checkpoint.pth.tar files."""
  return {"state_dict": {f"module.model.{k}": v for k, v in net.state_dict().items()},
          "epoch": 3, "optimizer": {}}


def _images(size=64, batch=2):
  return np.random.default_rng(1).uniform(size=(batch, size, size, 3)).astype(np.float32)


def _assert_same(net, model, variables, images):
  with torch.no_grad():
    expected = net(torch.from_numpy(images)).numpy()  # (B, S, K, h, w)
  got = np.asarray(model.apply(variables, images, train=False)["joints"]).transpose(0, 1, 4, 2, 3)
  assert got.shape == expected.shape
  relative = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
  assert relative < 1e-4, relative


@pytest.mark.parametrize("num_stacks,num_features", [(1, 32), (2, 32), (1, 256)])
def test_import_matches_pytorch_forward(num_stacks, num_features):
  net = _reference(num_stacks, num_features)
  variables = torch_import.variables_from_state_dict(
      _published(net), num_stacks, num_features, 16)
  model = StackedHourglass(num_stacks, num_features, 16)
  _assert_same(net, model, variables, _images())
  # The unused skip convolutions are dropped, the used ones kept.
  assert "skip" not in variables["params"]["pre_res2"]
  assert "skip" in variables["params"]["pre_res1"]
  kernel = variables["params"]["pre_conv"]["kernel"]
  np.testing.assert_array_equal(
      kernel, net.pre[0].conv.weight.detach().numpy().transpose(2, 3, 1, 0))


def test_import_into_the_scanned_and_the_unrolled_layouts():
  """Each stack's tensors go to its slice of the stacked parameters, merges too."""
  net = _reference(3, 32)
  scanned = torch_import.variables_from_state_dict(_published(net), 3, 32, 16)
  unrolled = torch_import.variables_from_state_dict(_published(net), 3, 32, 16,
                                                    scan_stacks=False)
  _assert_same(net, StackedHourglass(3, 32, 16), scanned, _images())
  _assert_same(net, StackedHourglass(3, 32, 16, scan_stacks=False), unrolled, _images())
  params = scanned["params"]
  for s in range(3):
    np.testing.assert_array_equal(params["stacks"]["out"]["kernel"][s],
                                  net.outs[s].conv.weight.detach().numpy().transpose(2, 3, 1, 0))
  for s in range(2):
    np.testing.assert_array_equal(params["merge_features"]["bias"][s],
                                  net.merge_features[s].conv.conv.bias.detach().numpy())
  assert params["merge_pred"]["kernel"].shape == (2, 1, 1, 16, 32)
  np.testing.assert_array_equal(
      scanned["batch_stats"]["stacks"]["hourglass"]["up1"]["bn1"]["mean"][2],
      net.hgs[2][0].up1.bn1.running_mean.numpy())


def test_accepts_bare_state_dict_and_numpy_arrays():
  net = _reference(1, 32)
  bare = {k: v.numpy() for k, v in net.state_dict().items()}
  variables = torch_import.variables_from_state_dict(bare, 1, 32)
  _assert_same(net, StackedHourglass(1, 32, 16), variables, _images())
  assert torch_import.infer_architecture(bare) == {
      "num_stacks": 1, "num_features": 32, "num_keypoints": 16,
      "hourglass_depth": 4, "num_input_channels": 3}


def test_truncated_checkpoint_names_missing_tensors():
  net = _reference(2, 32)
  checkpoint = _published(net)
  del checkpoint["state_dict"]["module.model.hgs.1.0.low3.conv2.conv.weight"]
  with pytest.raises(ValueError, match=r"1 missing tensor.*hgs\.1\.0\.low3\.conv2\.conv\.weight"):
    torch_import.variables_from_state_dict(checkpoint, 2, 32)
  # A 1-stack checkpoint read as 2 stacks: every tensor of stack 1 is missing.
  one_stack = _published(_reference(1, 32))
  with pytest.raises(ValueError, match=r"264 missing tensor.*features\.1\.0\.bn1"):
    torch_import.variables_from_state_dict(one_stack, 2, 32)


def test_unexpected_and_misshaped_tensors_are_named():
  checkpoint = _published(_reference(1, 32))
  sd = checkpoint["state_dict"]
  sd["module.model.extra_head.weight"] = torch.zeros(3)
  with pytest.raises(ValueError, match=r"unexpected tensor.*extra_head\.weight"):
    torch_import.variables_from_state_dict(checkpoint, 1, 32)
  del sd["module.model.extra_head.weight"]
  sd["module.model.outs.0.conv.weight"] = torch.zeros(16, 32, 3, 3)
  with pytest.raises(ValueError, match=r"'outs\.0\.conv\.weight' has shape \(16, 32, 3, 3\)"
                     r".*needs \(16, 32, 1, 1\)"):
    torch_import.variables_from_state_dict(checkpoint, 1, 32)


def test_launch_import_writes_a_loadable_workdir(tmp_path):
  net = _reference(2, 32)
  path = tmp_path / "checkpoint.pth.tar"
  torch.save(_published(net), path)
  workdir = tmp_path / "imported"
  with pytest.raises(ValueError, match="holds 2 stacks"):
    import_torch.import_checkpoint(path, workdir, num_stacks=8)
  import_torch.import_checkpoint(path, workdir, num_stacks=2)

  loaded = workdir_lib.load_model(workdir)
  config, model, variables = loaded.config, loaded.model, loaded.variables
  assert (config.model.num_stacks, config.model.num_features) == (2, 32)
  assert config.input.crop == "mpii" and config.input.name == "mpii_trb/joints"
  assert config.input.normalization == "unit"
  assert config.input.image_size == 256 and config.input.heatmap_size == 64
  _assert_same(net, model, jax.tree.map(np.asarray, variables), _images())
  with pytest.raises(FileExistsError):
    import_torch.import_checkpoint(path, workdir)


def test_truncated_file_is_refused(tmp_path):
  path = tmp_path / "checkpoint.pth.tar"
  torch.save(_published(_reference(1, 32)), path)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match=r"cannot read PyTorch checkpoint .*checkpoint\.pth\.tar"):
    import_torch.import_checkpoint(path, tmp_path / "w")


def test_reference_with_the_demo_stem_matches_our_parameters():
  """benchmarks/train_step.py --demo_model compares the same graph in both."""
  net = torch_reference.posenet(1, num_features=64, hourglass_depth=3, stem_features=32)
  model = StackedHourglass(num_stacks=1, num_features=64, hourglass_depth=3, stem_features=32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 64, 64, 3),
                                                                          np.float32)))
  ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
  unused = {id(p) for m in net.modules() if getattr(m, "need_skip", True) is False
            for p in m.skip_layer.parameters()}  # the reference keeps unused skips
  assert sum(p.numel() for p in net.parameters() if id(p) not in unused) == ours
  assert net.pre[0].conv.out_channels == 16 and net.pre[1].conv3.conv.out_channels == 32
