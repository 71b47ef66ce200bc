# grasp_ros developer entry points.
#
#   make setup   venv + Python deps + ROS 2 wheels + colcon build of the messages (idempotent)
#   make test    the pytest suite (isolated DDS domain)
#   make demo    closed-loop demo (grasp_ros.cli demo); ROBOT=arm: the MuJoCo arm
#   make bench   the planner benchmark at 20 episodes a cell (bench --quick: about 40 min)
#   make clean   remove colcon build/install/log and the stamps (keeps .venv)
#   make distclean  clean + remove .venv
#
# Every step of `setup` leaves a stamp file in $(STAMPS) and is redone only when its inputs
# change, so a `make setup` with nothing changed returns at once.

PYTHON ?= python3
VENV   ?= .venv
ROBOT  ?= point_mass
STAMPS := .stamps

ROOT    := $(CURDIR)
VPY     := $(VENV)/bin/python
INSTALL := $(ROOT)/install/grasp_ros

# What the colcon build installs: messages, CMake/package metadata, launch and parameter
# files, the `ros2 run` scripts, and a copy of the Python package (keep it in sync, so that
# `ros2 run` after sourcing install/setup.bash runs the current code). Files only: folder
# mtimes change whenever Python writes __pycache__.
BUILD_INPUTS := CMakeLists.txt package.xml \
	$(shell find msg launch config scripts grasp_ros -type f \
		-not -path '*/__pycache__/*' -not -name '*.pyc' 2>/dev/null)

# Run-time environment for everything that imports grasp_ros.msg or starts nodes.
# LD_LIBRARY_PATH: rosidl's type-support dispatch dlopen()s libgrasp_ros__rosidl_typesupport_*.so
#   by bare name, so install/grasp_ros/lib must be on the loader path (what sourcing
#   install/setup.bash would do). The ROS wheels add their own folders themselves.
# AMENT_PREFIX_PATH: lets ament_index_python find share/grasp_ros (config/, launch/).
# The venv's grasp_ros_install.pth (tools/write_venv_pth.py) sets the same for a plain
# `.venv/bin/python`; exporting them here does not depend on that.
RUN_ENV := LD_LIBRARY_PATH="$(INSTALL)/lib$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" \
	AMENT_PREFIX_PATH="$(INSTALL):$(ROOT)/$(VENV)$${AMENT_PREFIX_PATH:+:$$AMENT_PREFIX_PATH}"

# DDS isolation for tests: a domain of their own per run (unless ROS_DOMAIN_ID is set: one no
# node uses now, tools/free_ros_domain.py; else one from the shell's pid) and no discovery
# beyond this host.
TEST_ENV := ROS_DOMAIN_ID="$${ROS_DOMAIN_ID:-$$($(RUN_ENV) $(VPY) tools/free_ros_domain.py || echo $$(( $$$$ % 200 + 10 )))}" \
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

.PHONY: setup test demo bench clean distclean

setup: $(STAMPS)/colcon $(STAMPS)/editable $(STAMPS)/pth $(STAMPS)/osmesa

# 1. The virtual environment.
$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

# 2. Python dependencies, and the ROS 2 Kilted wheels plus the colcon/rosidl toolchain.
$(STAMPS)/deps: requirements.txt requirements-ros.txt $(VENV)/pyvenv.cfg
	$(VPY) -m pip install -r requirements.txt
	$(VPY) -m pip install -r requirements-ros.txt
	@mkdir -p $(STAMPS) && touch $@

# 2b. MuJoCo (the planar arm, grasp_ros/sim/arm) renders its camera with OSMesa where there is
#     no GPU: the system library libosmesa6. Installed with apt-get when run as root; otherwise
#     the command to run is printed, no stamp is left, and the next `make setup` checks again.
$(STAMPS)/osmesa:
	@if { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libOSMesa\.so'; then \
		mkdir -p $(STAMPS) && touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && apt-get install -y -qq libosmesa6 && mkdir -p $(STAMPS) && touch $@; \
	else \
		echo "NOTE: without a GPU the arm's camera renders with OSMesa; install it, e.g."; \
		echo "      sudo apt-get install libosmesa6"; \
	fi

# 3. The wheels' CMake exports name include folders of the machine they were built on
#    (/opt/python/cp311-cp311/...); CMake's generate step fails until they point at this
#    venv's Python and numpy headers. Redone whenever pip may have reinstalled them.
$(STAMPS)/cmake-fix: $(STAMPS)/deps tools/fix_ros_wheel_cmake.py
	$(VPY) tools/fix_ros_wheel_cmake.py
	@mkdir -p $(STAMPS) && touch $@

# 4. colcon build of this package (messages, executables, share/) into build/ install/ log/.
#    The venv's bin/ goes first on PATH so CMake finds the venv's python, and
#    AMENT_PREFIX_PATH names the venv so rosidl finds the wheels' type supports in its
#    ament index. (colcon warns that the venv has no local_setup.*: harmless.)
$(STAMPS)/colcon: $(STAMPS)/cmake-fix $(BUILD_INPUTS)
	PATH="$(ROOT)/$(VENV)/bin:$$PATH" AMENT_PREFIX_PATH="$(ROOT)/$(VENV)" \
		$(VENV)/bin/colcon build --base-paths . \
		--build-base build --install-base install \
		--event-handlers desktop_notification- \
		--cmake-args -DPython3_EXECUTABLE="$(ROOT)/$(VPY)" -DCMAKE_BUILD_TYPE=Release \
			-DBUILD_TESTING=OFF
	@mkdir -p $(STAMPS) && touch $@

# 5. The library itself, editable, for the `grasp-ros` command and its metadata
#    (no build isolation: setuptools is already in the venv, and nothing is downloaded).
$(STAMPS)/editable: setup.py $(STAMPS)/deps
	$(VPY) -m pip install --no-deps --no-build-isolation -q -e .
	@mkdir -p $(STAMPS) && touch $@

# 6. A .pth in the venv: source tree, then the colcon install's site-packages (for
#    grasp_ros.msg), on sys.path, plus the run-time environment above.
$(STAMPS)/pth: tools/write_venv_pth.py $(STAMPS)/deps
	$(VPY) tools/write_venv_pth.py
	@mkdir -p $(STAMPS) && touch $@

# --durations: the slowest tests named in every log, to keep the suite's time in view
test: setup
	$(RUN_ENV) $(TEST_ENV) $(VPY) -m pytest -q --durations=15 test

demo: setup
	$(RUN_ENV) $(VPY) -m grasp_ros.cli demo --robot $(ROBOT)

bench: setup
	$(RUN_ENV) $(VPY) -m grasp_ros.cli bench --quick

clean:
	rm -rf build install log $(STAMPS)

distclean: clean
	rm -rf $(VENV) grasp_ros.egg-info .pytest_cache
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
