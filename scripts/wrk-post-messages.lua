-- wrk script: POST /messages from many users at once.
-- TOKENS and RECEIVERS come from the environment (comma-separated, same length): each
-- request picks a random sender and sends to that sender's partner.
local tokens, receivers = {}, {}
for t in string.gmatch(os.getenv("TOKENS") or "", "[^,]+") do tokens[#tokens + 1] = t end
for r in string.gmatch(os.getenv("RECEIVERS") or "", "[^,]+") do receivers[#receivers + 1] = r end
local n = 0

request = function()
  n = n + 1
  local i = math.random(#tokens)
  local body = string.format('{"receiverId":"%s","content":"load %d"}', receivers[i], n)
  return wrk.format("POST", "/messages", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[i],
  }, body)
end

done = function(summary)
  io.write(string.format("non-2xx/3xx: %d\n", summary.errors.status))
end
