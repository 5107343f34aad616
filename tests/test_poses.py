"""The pose convention: Blender world matrices -> the injector's 12-vectors (model reference 2)."""

import math

import numpy as np
import pytest

from backend import poses

# Camera at (0, -10, 1.5) rotated 90 degrees about X: it looks along +Y (model reference test vectors).
CAMERA = np.array([[1, 0, 0, 0], [0, 0, -1, -10], [0, 1, 0, 1.5], [0, 0, 0, 1]], dtype=float)


def rot_z(deg: float, position=(0.0, 0.0, 0.0)) -> np.ndarray:
    return poses.yaw_matrix(math.radians(deg), position)


def rot_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    m = np.eye(4)
    m[1:3, 1:3] = [[c, -s], [s, c]]
    return m


@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        (np.eye(4), [-1, 0, 0, 0, 1, 0, 0, 0, -1, 0, -1.5, 10]),
        (rot_z(180), [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, -1.5, 10]),
        (rot_z(90, (1, 0, 0)), [0, 0, -1, 0, 1, 0, 1, 0, 0, 1, -1.5, 10]),
    ],
    ids=["faces-camera", "faces-away", "faces-screen-right"],
)
def test_exact_mapping_reference_vectors(entity, expected):
    np.testing.assert_allclose(poses.model_poses(CAMERA, entity, "NEG_Y", "exact"), expected, atol=1e-9)


RIG_VECTOR = [-1, 0, 0, 0, 0.995634, -0.093341, 0, -0.093341, -0.995634, 0, 2.398015, 9.819035]


@pytest.mark.parametrize(
    "camera",
    [
        CAMERA,
        poses.look_at_camera((0, -10, 4.0), (0, 0, 0)),  # higher and pitched down
        poses.look_at_camera((0, -10, 0.3), (0, 0, 3.0)) @ np.diag([1.0, 1, 1, 1]),  # low, pitched up
        CAMERA
        @ np.array(
            [[math.cos(0.3), -math.sin(0.3), 0, 0], [math.sin(0.3), math.cos(0.3), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
        ),  # rolled about its view axis
    ],
    ids=["level", "pitched-down", "pitched-up", "rolled"],
)
def test_rig_mapping_ignores_camera_height_pitch_and_roll(camera):
    np.testing.assert_allclose(poses.model_poses(camera, np.eye(4), "NEG_Y", "rig"), RIG_VECTOR, atol=2e-6)


def test_rig_mapping_keeps_only_heading_and_ground_position_of_the_entity():
    tilted = rot_z(30, (1.0, 2.0, 0.7)) @ rot_x(25)
    upright = rot_z(30, (1.0, 2.0, 0.0))
    np.testing.assert_allclose(
        poses.model_poses(CAMERA, tilted, mapping="rig"), poses.model_poses(CAMERA, upright, mapping="rig"), atol=1e-9
    )


@pytest.mark.parametrize(
    ("facing", "local_forward"),
    [("POS_X", (1, 0, 0)), ("NEG_X", (-1, 0, 0)), ("POS_Y", (0, 1, 0)), ("NEG_Y", (0, -1, 0))],
)
def test_every_facing_axis_puts_the_entity_forward_where_that_axis_points(facing, local_forward):
    # Rotate the empty so that its facing axis points along world -Y (towards the camera).
    yaw = {"POS_X": -90, "NEG_X": 90, "POS_Y": 180, "NEG_Y": 0}[facing]
    entity = rot_z(yaw)
    np.testing.assert_allclose(entity[:3, :3] @ local_forward, [0, -1, 0], atol=1e-12)
    for mapping in poses.MAPPINGS:
        got = poses.model_poses(CAMERA, entity, facing, mapping)
        expected = poses.model_poses(CAMERA, np.eye(4), "NEG_Y", mapping)
        np.testing.assert_allclose(got, expected, atol=1e-9)


def test_rotations_are_proper_and_identity_means_facing_away():
    rng = np.random.default_rng(1)
    for _ in range(20):
        entity = rot_z(rng.uniform(-180, 180), rng.uniform(-5, 5, 3)) @ rot_x(rng.uniform(-40, 40))
        for mapping in poses.MAPPINGS:
            rot, _ = poses.split_pose(poses.model_poses(CAMERA, entity, "NEG_Y", mapping))
            np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
            assert np.linalg.det(rot) == pytest.approx(1.0)
    rot, _ = poses.split_pose(poses.model_poses(CAMERA, rot_z(180), "NEG_Y", "exact"))
    np.testing.assert_allclose(rot, np.eye(3), atol=1e-12)


def test_scale_is_removed():
    scaled = rot_z(40, (2, 3, 0)) @ np.diag([2.0, 0.5, 3.0, 1.0])
    np.testing.assert_allclose(
        poses.model_poses(CAMERA @ np.diag([4.0, 4.0, 4.0, 1.0]), scaled, mapping="exact"),
        poses.model_poses(CAMERA, rot_z(40, (2, 3, 0)), mapping="exact"),
        atol=1e-9,
    )


@pytest.mark.parametrize(
    ("matrix", "words"),
    [
        (np.diag([1.0, 0.0, 1.0, 1.0]), "zero length"),
        (np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float), "sheared"),
        (np.diag([-1.0, 1.0, 1.0, 1.0]), "mirrored"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.eye(3), "4x4"),
    ],
    ids=["singular", "sheared", "mirrored", "nan", "not-4x4"],
)
def test_unusable_matrices_are_refused_with_a_reason(matrix, words):
    with pytest.raises(poses.PoseError, match=words):
        poses.model_poses(CAMERA, matrix)


def test_whole_shots_convert_in_one_call():
    entities = np.stack([rot_z(10 * i, (0.1 * i, 0, 0)) for i in range(13)])
    cameras = np.stack([CAMERA] * 13)
    batch = poses.model_poses(cameras, entities)
    assert batch.shape == (13, 12)
    np.testing.assert_allclose(batch[7], poses.model_poses(CAMERA, entities[7]), atol=1e-12)


def test_camera_looking_straight_down_still_has_a_heading():
    down = poses.look_at_camera((0, -10, 20), (0, -10, 0))  # looks straight down, its up is +Y
    got = poses.model_poses(down, np.eye(4), mapping="rig")
    np.testing.assert_allclose(got, RIG_VECTOR, atol=2e-6)


# --- the release's own convention, re-derived in Unreal space --------------------------------
# Unreal is left-handed, centimetres, row vectors: a transform's rows are its X (forward),
# Y (right) and Z (up) axes, then its location. The release reads the entity pose relative to
# the camera as right/up/forward = Y/Z/X of each. Mirroring into Blender: (x, y, z) -> (x, -y, z)/100.


def unreal_camera(yaw_deg: float, pitch_deg: float, location_cm) -> np.ndarray:
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    fwd = np.array([math.cos(p) * math.cos(y), math.cos(p) * math.sin(y), math.sin(p)])
    # Unreal's rotator: yaw turns X towards Y (clockwise seen from above, Unreal being left-handed).
    right = np.array([-math.sin(y), math.cos(y), 0.0])
    up = np.array([-math.sin(p) * math.cos(y), -math.sin(p) * math.sin(y), math.cos(p)])
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3], m[3, :3] = fwd, right, up, location_cm
    return m


def unreal_entity(yaw_deg: float, location_cm) -> np.ndarray:
    return unreal_camera(yaw_deg, 0.0, location_cm)


def release_pose(cam_ue: np.ndarray, ent_ue: np.ndarray) -> np.ndarray:
    """The release's computation, in Unreal space: axes dotted in (right, up, forward) order."""
    cam_axes = [cam_ue[1, :3], cam_ue[2, :3], cam_ue[0, :3]]
    ent_axes = [ent_ue[1, :3], ent_ue[2, :3], ent_ue[0, :3]]
    rot = np.array([[a @ b for b in ent_axes] for a in cam_axes])
    t = np.array([a @ (ent_ue[3, :3] - cam_ue[3, :3]) for a in cam_axes]) / 100.0
    return np.concatenate([rot.T.reshape(9), t])


MIRROR = np.diag([1.0, -1.0, 1.0])


def to_blender_camera(cam_ue: np.ndarray) -> np.ndarray:
    fwd, up = MIRROR @ cam_ue[0, :3], MIRROR @ cam_ue[2, :3]
    right = np.cross(fwd, up)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, -fwd, MIRROR @ cam_ue[3, :3] / 100.0
    return m


def to_blender_empty(ent_ue: np.ndarray) -> np.ndarray:
    """A -Y-facing, Z-up empty standing where the Unreal entity stands."""
    fwd, up = MIRROR @ ent_ue[0, :3], MIRROR @ ent_ue[2, :3]
    m = np.eye(4)
    m[:3, 1], m[:3, 2] = -fwd, up
    m[:3, 0] = np.cross(m[:3, 1], m[:3, 2])
    m[:3, 3] = MIRROR @ ent_ue[3, :3] / 100.0
    return m


def test_blender_conversion_reproduces_the_release_convention_on_unreal_data():
    rng = np.random.default_rng(7)
    for i in range(12):  # a ring of 12 rig cameras, as in the training data
        cam_ue = unreal_camera(
            30 * i + 180,
            poses.RIG_PITCH_DEG,
            (800 * math.cos(math.radians(30 * i)), 800 * math.sin(math.radians(30 * i)), 0.0),
        )
        for _ in range(5):
            ent_ue = unreal_entity(rng.uniform(-180, 180), (*rng.uniform(-400, 400, 2), poses.RIG_PIVOT_HEIGHT * 100))
            expected = release_pose(cam_ue, ent_ue)
            for mapping in poses.MAPPINGS:
                got = poses.model_poses(to_blender_camera(cam_ue), to_blender_empty(ent_ue), "NEG_Y", mapping)
                np.testing.assert_allclose(got, expected, atol=1e-9, err_msg=f"camera {i}, {mapping}")


def test_reference_dataset_vector_camera_12_entity_0():
    # The rows of C_12 and of entity 0 at the release's slot 0 (record frame 10), location loc1
    # (CameraTarget (19000, -22700, 0) subtracted); the expected vector is the reference's test vector.
    cam_ue = np.array(
        [
            [-0.9956342260592881, 1.2193002680650596e-16, -0.09334070869305827, 0],
            [-1.2246467991473532e-16, -1.0, 0.0, 0],
            [-0.09334070869305827, 1.1430940013109933e-17, 0.9956342260592881, 0],
            [800.0, -1.9594348786357651e-13, 0.0, 1],
        ]
    )
    ent_ue = np.array(
        [
            [-0.00531441, 0.999986, 0, 0],
            [-0.999986, -0.00531441, 0, 0],
            [0, 0, 1, 0],
            [18999.6 - 19000.0, -22896.1 + 22700.0, 147.103, 1],
        ]
    )
    expected = [
        0.0053144,
        0.0933394,
        0.9956203,
        0,
        0.9956342,
        -0.0933407,
        -0.999986,
        0.0004961,
        0.0052912,
        1.961,
        2.2117068,
        7.8317494,
    ]
    for mapping in poses.MAPPINGS:
        got = poses.model_poses(to_blender_camera(cam_ue), to_blender_empty(ent_ue), "NEG_Y", mapping)
        np.testing.assert_allclose(got, expected, atol=2e-5)


def test_projection_uses_the_model_camera():
    assert poses.MODEL_FOCAL_PX == pytest.approx(1060.606, abs=1e-3)
    np.testing.assert_allclose(poses.project([0, 0, 5]), [360, 240])
    edge = math.tan(math.radians(37.5 / 2)) * 10
    assert poses.project([edge, 0, 10])[0] == pytest.approx(720, abs=1.5)
    assert np.isnan(poses.project([0, 0, -1])).all()


def test_rig_apparent_geometry_puts_the_ring_target_at_the_image_centre():
    rig = poses.model_poses(poses.look_at_camera((0, -8, 1.7), (0, 0, 1)), np.eye(4), mapping="rig")
    context = np.asarray(poses.rig_camera_context())
    px = poses.project(poses.apparent_position(rig, context, "rig"))
    np.testing.assert_allclose(px, [360, 240], atol=0.5)
