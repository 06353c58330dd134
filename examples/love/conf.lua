-- LÖVE 11.4 settings for examples/love. MOLTFLOW_LOVE_NOWINDOW=1 runs the
-- game loop without a window (no display, no OpenGL needed).
-- luacheck: globals love
function love.conf(t)
  t.identity = "moltflow-example"
  t.version = "11.4"
  t.console = false
  t.window.title = "MoltFlow usage"
  t.window.width, t.window.height = 480, 200
  t.window.vsync = 1
  t.modules.audio, t.modules.sound = false, false
  t.modules.joystick, t.modules.physics, t.modules.touch, t.modules.video = false, false, false, false
  if os.getenv("MOLTFLOW_LOVE_NOWINDOW") == "1" then
    t.window = nil
    t.modules.window, t.modules.graphics = false, false
  end
end
