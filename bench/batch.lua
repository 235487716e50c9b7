-- Batches of 100 ~1 KB track events on /v1/batch, unique messageIds.
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
local item = [[{"type":"track","userId":"user-%d","event":"Order Completed","messageId":"%s-%d","properties":{"order_id":"o-%d","total":27.5,"revenue":25.0,"currency":"USD","products":[{"product_id":"507f1f77bcf86cd799439011","sku":"45790-32","name":"Monopoly: 3rd Edition","price":19,"quantity":1},{"product_id":"505bd76785ebb509fc183733","sku":"46493-32","name":"Uno Card Game","price":3,"quantity":2}]},"context":{"library":{"name":"analytics-python","version":"2.3.4"},"page":{"path":"/checkout","url":"https://shop.example.com/checkout","title":"Checkout"},"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/113.0.0.0 Safari/537.36","ip":"203.0.113.7"}}]]
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic QkVOQ0hfV1JJVEVfS0VZOg=="  -- BENCH_WRITE_KEY:
request = function()
  local items = {}
  for i = 1, 100 do
    counter = counter + 1
    items[i] = string.format(item, counter % 1000, prefix, counter, counter)
  end
  return wrk.format(nil, nil, nil, '{"batch":[' .. table.concat(items, ",") .. ']}')
end
function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_s=%.2f rps=%.0f events_per_s=%.0f p50_ms=%.2f p99_ms=%.2f non2xx=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    100 * summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
