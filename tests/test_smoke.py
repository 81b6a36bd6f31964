from cdp_wsroute import Page
from cdp_wsroute._http import StaticServer


async def test_page_evaluates(page: Page, server: StaticServer) -> None:
    server.route("/", "<title>t</title><script>window.answer = 42</script>")
    await page.goto(server.url("/"))
    assert await page.evaluate("window.answer") == 42
    assert await page.evaluate("document.title") == "t"
