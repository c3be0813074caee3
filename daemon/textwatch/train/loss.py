"""The YOLOv4 loss for raw [yolo] outputs, with do-not-care regions.

What darknet's [yolo] layer does, in batched torch:

- Assignment: each target goes to the anchor (of all heads) whose shape fits it
  best by IoU of centred boxes, and to every other anchor fitting it better than
  `iou_thresh` (darknet's iou_thresh=0.213), in the cell holding its centre.
- Box: 1 - CIoU between the decoded prediction and the target, decoded with the
  same grid sensitivity (scale_x_y) that OpenCV applies at inference.
- Objectness: BCE, target 1 on assigned cells and 0 elsewhere, except that a
  prediction whose box overlaps any target by more than `ignore_thresh`, or
  whose centre lies inside an `ignore` region, is not taught "background": the
  first is a good duplicate that NMS removes, the second is text the labels do
  not transcribe (ICDAR "###"), which the network must not learn to suppress.
- Class: BCE on assigned cells. With one class it still matters: OpenCV scores a
  box objectness * class probability.

Targets come padded to a fixed count per image (`Targets`), so a whole batch is
three tensor operations instead of a Python loop over images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from textwatch.detect.darknet import YoloHead

TW_MAX = 8.0  # clamp on the raw width/height logit: exp(8) anchors is already absurd
OBJ_BALANCE = {8: 4.0, 16: 1.0, 32: 0.4}  # objectness weight per stride (small cells are many)


@dataclass(frozen=True)
class LossWeights:
    """Relative weights of the three terms and the darknet thresholds."""

    box: float = 0.05
    obj: float = 1.0
    cls: float = 0.5
    iou_thresh: float = 0.213
    ignore_thresh: float = 0.7


@dataclass
class Targets:
    """A batch of labels, padded: boxes B x N x 4 normalised xyxy, classes B x N, valid B x N.

    `ignore` (B x M x 4, `ignore_valid` B x M) are do-not-care regions.
    """

    boxes: torch.Tensor
    classes: torch.Tensor
    valid: torch.Tensor
    ignore: torch.Tensor
    ignore_valid: torch.Tensor

    def to(self, device: torch.device | str) -> Targets:
        return Targets(*(t.to(device) for t in (self.boxes, self.classes, self.valid, self.ignore, self.ignore_valid)))


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    return torch.stack(
        [(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2,
         boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]],
        dim=-1,
    )


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    half = boxes[..., 2:4] / 2
    return torch.cat([boxes[..., 0:2] - half, boxes[..., 0:2] + half], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection areas of xyxy boxes: a (..., P, 4), b (..., N, 4) -> (..., P, N)."""
    a, b = a[..., :, None, :], b[..., None, :, :]
    inter_w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    inter_h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    return inter_w * inter_h


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: a (..., P, 4), b (..., N, 4) -> (..., P, N)."""
    inter = box_intersection(a, b)
    return inter / (box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter + 1e-9)


def ciou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Complete IoU of matching cx,cy,w,h boxes (N x 4): IoU - centre distance - aspect term."""
    p, t = cxcywh_to_xyxy(pred), cxcywh_to_xyxy(target)
    inter_w = (torch.minimum(p[:, 2], t[:, 2]) - torch.maximum(p[:, 0], t[:, 0])).clamp(min=0)
    inter_h = (torch.minimum(p[:, 3], t[:, 3]) - torch.maximum(p[:, 1], t[:, 1])).clamp(min=0)
    inter = inter_w * inter_h
    union = pred[:, 2] * pred[:, 3] + target[:, 2] * target[:, 3] - inter + 1e-9
    iou = inter / union
    enclose_w = torch.maximum(p[:, 2], t[:, 2]) - torch.minimum(p[:, 0], t[:, 0])
    enclose_h = torch.maximum(p[:, 3], t[:, 3]) - torch.minimum(p[:, 1], t[:, 1])
    diagonal = enclose_w**2 + enclose_h**2 + 1e-9
    centre = (pred[:, 0] - target[:, 0]) ** 2 + (pred[:, 1] - target[:, 1]) ** 2
    v = (4 / math.pi**2) * (torch.atan(target[:, 2] / (target[:, 3] + 1e-9)) - torch.atan(pred[:, 2] / (pred[:, 3] + 1e-9))) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + 1e-9)
    return iou - centre / diagonal - alpha * v


def anchor_shape_iou(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU of centred boxes: target sizes (N x 2) against anchor sizes (K x 2) -> N x K."""
    inter = torch.minimum(wh[:, None, :], anchors[None, :, :]).prod(-1)
    return inter / (wh.prod(-1)[:, None] + anchors.prod(-1)[None, :] - inter + 1e-9)


def decode_boxes(p: torch.Tensor, head: YoloHead, net_w: int, net_h: int) -> torch.Tensor:
    """Raw logits B x A x H x W x (5+C) -> predicted cx,cy,w,h normalised, like model.decode_head."""
    _, _, rows, cols, _ = p.shape
    gy, gx = torch.meshgrid(
        torch.arange(rows, device=p.device, dtype=p.dtype), torch.arange(cols, device=p.device, dtype=p.dtype), indexing="ij"
    )
    anchors = torch.tensor(head.anchors, device=p.device, dtype=p.dtype)
    s = head.scale_x_y
    cx = ((torch.sigmoid(p[..., 0]) - 0.5) * s + 0.5 + gx) / cols
    cy = ((torch.sigmoid(p[..., 1]) - 0.5) * s + 0.5 + gy) / rows
    w = torch.exp(p[..., 2].clamp(max=TW_MAX)) * anchors[:, 0, None, None] / net_w
    h = torch.exp(p[..., 3].clamp(max=TW_MAX)) * anchors[:, 1, None, None] / net_h
    return torch.stack([cx, cy, w, h], dim=-1)


@dataclass
class Assignment:
    """Positives of one head: batch, anchor, row, col indices and their target box/class."""

    b: torch.Tensor
    a: torch.Tensor
    gy: torch.Tensor
    gx: torch.Tensor
    box: torch.Tensor  # cx, cy, w, h normalised
    cls: torch.Tensor


def assign(targets: Targets, heads: list[YoloHead], net_w: int, net_h: int, iou_thresh: float) -> list[Assignment]:
    """Darknet's assignment: best anchor over all heads, plus every anchor above iou_thresh."""
    b_idx, t_idx = targets.valid.nonzero(as_tuple=True)
    boxes = xyxy_to_cxcywh(targets.boxes[b_idx, t_idx])
    classes = targets.classes[b_idx, t_idx]
    wh_px = boxes[:, 2:4] * torch.tensor([net_w, net_h], device=boxes.device, dtype=boxes.dtype)
    all_anchors = torch.tensor([a for h in heads for a in h.anchors], device=boxes.device, dtype=boxes.dtype)
    ious = anchor_shape_iou(wh_px, all_anchors)  # N x K
    chosen = ious > iou_thresh
    if len(ious):
        chosen[torch.arange(len(ious), device=ious.device), ious.argmax(1)] = True
    result: list[Assignment] = []
    first = 0
    for head in heads:
        count = len(head.anchors)
        t, a = chosen[:, first : first + count].nonzero(as_tuple=True)
        first += count
        rows, cols = net_h // head.stride, net_w // head.stride
        gx = (boxes[t, 0] * cols).long().clamp(0, cols - 1)
        gy = (boxes[t, 1] * rows).long().clamp(0, rows - 1)
        result.append(Assignment(b_idx[t], a, gy, gx, boxes[t], classes[t]))
    return result


def inside_any(points: torch.Tensor, regions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """points B x P x 2 (x, y), regions B x M x 4 xyxy -> B x P: the point lies in a valid region."""
    x, y = points[..., 0, None], points[..., 1, None]
    r = regions[:, None, :, :]
    hit = (x >= r[..., 0]) & (x <= r[..., 2]) & (y >= r[..., 1]) & (y <= r[..., 3]) & valid[:, None, :]
    return hit.any(-1)


def yolo_loss(
    outputs: list[torch.Tensor], targets: Targets, heads: list[YoloHead], net_w: int, net_h: int, weights: LossWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss (scaled by batch size, as YOLOv5 does) and its parts for logging."""
    batch = outputs[0].shape[0]
    device = outputs[0].device
    assignments = assign(targets, heads, net_w, net_h, weights.iou_thresh)
    box_loss = torch.zeros((), device=device)
    obj_loss = torch.zeros((), device=device)
    cls_loss = torch.zeros((), device=device)
    positives = 0
    for raw, head, pos in zip(outputs, heads, assignments):
        _, _, rows, cols = raw.shape
        p = raw.float().view(batch, len(head.anchors), 5 + head.classes, rows, cols).permute(0, 1, 3, 4, 2)
        pred_boxes = decode_boxes(p, head, net_w, net_h)  # B x A x H x W x 4
        obj_target = torch.zeros(p.shape[:4], device=device)
        obj_weight = _background_weight(pred_boxes, targets, weights.ignore_thresh)
        if len(pos.b):
            chosen = pred_boxes[pos.b, pos.a, pos.gy, pos.gx]
            box_loss = box_loss + (1.0 - ciou(chosen, pos.box)).mean()
            obj_target[pos.b, pos.a, pos.gy, pos.gx] = 1.0
            obj_weight[pos.b, pos.a, pos.gy, pos.gx] = 1.0
            logits = p[pos.b, pos.a, pos.gy, pos.gx, 5:]
            one_hot = F.one_hot(pos.cls.long(), head.classes).float()
            cls_loss = cls_loss + F.binary_cross_entropy_with_logits(logits, one_hot)
            positives += len(pos.b)
        bce = F.binary_cross_entropy_with_logits(p[..., 4], obj_target, reduction="none")
        obj_loss = obj_loss + OBJ_BALANCE.get(head.stride, 1.0) * (bce * obj_weight).sum() / obj_weight.sum().clamp(min=1)
    total = (weights.box * box_loss + weights.obj * obj_loss + weights.cls * cls_loss) * batch
    parts = {
        "box": float(box_loss.detach()),
        "obj": float(obj_loss.detach()),
        "cls": float(cls_loss.detach()),
        "positives": float(positives),
    }
    return total, parts


def _background_weight(pred_boxes: torch.Tensor, targets: Targets, ignore_thresh: float) -> torch.Tensor:
    """1 where a prediction may be taught "background", 0 where it is ignored."""
    with torch.no_grad():
        batch = pred_boxes.shape[0]
        flat = pred_boxes.reshape(batch, -1, 4)
        weight = torch.ones(flat.shape[:2], device=flat.device)
        if targets.boxes.shape[1]:
            iou = box_iou(cxcywh_to_xyxy(flat), targets.boxes.to(flat.dtype))
            iou = iou.masked_fill(~targets.valid[:, None, :], 0.0)
            weight[iou.amax(-1) > ignore_thresh] = 0.0
        if targets.ignore.shape[1]:
            weight[inside_any(flat[..., 0:2], targets.ignore.to(flat.dtype), targets.ignore_valid)] = 0.0
        return weight.view(pred_boxes.shape[:4])
