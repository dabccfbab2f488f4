"""Mean-face landmark template for the Haar-cascade fallback detector (generated data).

478 MediaPipe face-mesh points (x, y, z) expressed in units of an OpenCV
``haarcascade_frontalface_default`` box: x, y in [0, 1] box coordinates, z in box widths.
Produced once by running both detectors on one frontal portrait (scikit-image's
``astronaut``); stored as float16, base64.
"""
import base64

import numpy as np

_DATA = (
    "2jdGOkau0zdkObWz0jeYOfOvXTclODSy2zcJOSS06DeKOOKzBDiqNpCwjzIXNmsoDzj+NKivFDghNECwJjiqKyKv1zdeOsOt"
    "1Td1OvOs1DeBOrmrvTcVO5iovDcvO6uptzdPO/uqszd1O0mqqTfOO2Cj0TeMOfCyDjd1Of+wHSyiMusyHDXANt+dcDTBNpCZ"
    "oDOpNkQgAzJCNncprzWoNp2ZRTTLNEenCzXvNAunFzPhNGyjIjIiNcsb6TCKNj8s1jQXPJErIzLiNRsqZSgWNhE09i4MNsku"
    "RDSfOFmowjYrOgKuyTZhOmiswzUnOvarFDUlOqej8TVOOp2pTjVAOg2ZGDSSOscsNTdbOZWzLDcAOQ+0fDCLNFAf8TXNN1iq"
    "dzX9OCaweTXHOIWveDBqOAMmRDeLOHCzsjMCNICs1DEkNLSooi6IMAAwsDbQNMiusDVLNQmjCzMbOuQsMSouOpU27zU4ORiv"
    "hzZaOUyvLjQqOhMtWjQzOmksMDFyM8ykYDUROaGuFTUxNA2uBTVkM+iuWzQOLGGqHjD6MZopsjSTMCuteS86NEUppC2mM/Uv"
    "wTZJOmmt2TU8OsSqMTUzOrShFDZDOYWuRDQvOrkspjR/OogqbTQ4OlAsYDZAOZGxaTVKOgYaCzZbOjWn1zZvOqeqhja1O+Kf"
    "mTZfO1SppDY5O9uptDYbO3aoyTYDO/CmYjWyOp0lQjW5OtwjHDXGOt0hADXaOmglZjS8ORGhTCZ1OCo30TeXOQmx9TSBOpkq"
    "zDR9OjYqxTZ9OS2vjjU5OWCspzZtOVuvLzUFOB6o+TMmOKakTTXgOM6tZjHZLSMoMDLhMNWlVjMKMz+srDQEO28qjjYBNBSw"
    "Wja6MDuvKjYEK0OukzKCNqwm3y7eNv0tFTaNNpsW4jBiNSkpdTZ7N16s+TX7OJexpytDN6EwSDBON3Ur8DGTN0slOjSZN7CS"
    "LTV1Nyqi5DVAN9OmYzfGNumvxypEOI4wzC88NXIrbDeFOdqy3DU+ODKs7CbzNUw2cTb/NqKoOjXYOLKpjjHiNTAr/jW3OCCx"
    "lidJOQk3HzZaNsAhozabOJCyuC8RO74yEDCFO4k0UiVnOLg0kiyOOv8z3CvaNGkyrDRPPGgtfzeQOfCwKjVpOPKpmywWNscw"
    "xzNeNn8hdDR0NucOiDSFOoEr9SnzOFkx7zWfPPEtuzNDPMkxBTILPE8zHjgDMfGvdTexPBQtBTVzNgKYkTVnNq8a8DVkNo8h"
    "5y0MNWUugTW3NU+d8DRqNRejWjRSNUyiiDNpNYKV0TKYNeAiKil4NAM1CjM8Nvsl1DfFOciuMjWmOXqq9zU0OSGwrTa1OWGu"
    "CjjONVqvuTGfO7gxdzMOPFUw8TV8PDopUS3uOpo17TUcNm4c3zbVNyOwfzeQPJwnyjR4PB8wICYoOcc0ATbgOomd4DXwOk+i"
    "xDUJO3qkszUqOwKhcjVrO+okwjQ3Oo0opTQuOrQojjQlOn8okTPeOZQo8C0jOU8t8jYYN+6tmjbaNcylNDboNbyc3zQ+Ovwo"
    "Ny3+OUIxMjfXNUmtJTXCOygp8zcfOLSyXjeRNzix/Td8N5SxRjZnOOyvjDdaPPMamzcbPIqcUjYMPPgfOzPCOh0uoDQQOdem"
    "TDRNO6YsCzLwOBGgzDNWOfuaqTBpOYopEzZIPDUkyTWEOLetJTIhOzcw4zOtO5MuDTI5OrMtXyqOOScyUzBfOvAv7yjiObA0"
    "dzKhOScoZDYVOBGuKzYtOd6xqTUjOUiwijb/OPGyIDY4NcGoEDWxNP2pGTSINJ6pmjKfNJSmdTHnNL0XrjD5Nbss/CVtN3E0"
    "ljHSNvwp6TILN6AlUzQhN4EcKTUTNy+c0jXwNmygSDbJNouiZCZnN/Y2ojUrOR2v0DZAOCixsDZGOfCyCDdvOU2yqzZPOT6y"
    "yTU+ORCuLzd8OaiyPjeFOfawVjZhNkIcpzZ9No6l3TaUNsuqbzK+NTQnkDF0NYknRTgtODqygDqkNnsnTziAOQOxrTsoNJYy"
    "gzkSN9Wg1jknNyifKDonNxwbnDrXNrgoPDnpNtadFDo7NTCorTlJNfmnbzpkNfCkqDqzNUiW1ToyN6wrMDktPCcrojpzNmAp"
    "zzv5NtgzMzvJNlMu0DnWONuoezg2OhOucThsOnus+Tg8OiGsTTlAOrik3ThhOu+pLTlaOrqdxTnJOngsOThkOZizRjgKORG0"
    "CjtMNWcRCzkDOKKqKjkfOTWwLjnpOKav2zrAODgkRjiUOHazSjqZNMmsvzrUNG+pYzsQMmgv1DgQNd+uVDmUNUKkGjpcOoss"
    "bDuZOnA26ThTOS6vmThuOVevujlROsQsojlXOiUs6Dp7NFmmNTk1Ob+urTmjND6uvDkrNBivGzrfLQyrKDtjM8Ao4zliMWSt"
    "OTsMNV8odjucNHcvdzhUOnyt6zhQOhWrPTlNOnaj1ThdOZOurjlUOm8sdDmgOg4qlzlbOg8srDhUOZuxHzliOnwHzzhsOsOn"
    "aTh6OsmqaTjIO6mgZThuO3ypZDhGOweqYDgmO56oWTgNO0mnDznKOuUkHznTOngiMTnkOnUgPTn6OqQkrDnwOfqiyjvrOAA3"
    "SzmeOigqYDmdOsMpdjiNOTmvHjlcOXqshzh+OWWvaTktOIqoATpgOOqlQzkFOe+t5zo1MF8mqToPMimnZzonNIysbTkzO/Qp"
    "8zhMNCGwETkoMVSvODl/LG2ucToQN0QlKzuaN4ItDjnENuyT7DoMNlwozDilN32s5jgVOaOxjzsLOFow7zr/N5EqgDoXOF4j"
    "3jkHOLudaDnNN/KjEjmFN3OnVzjYNvevkTuvOEYwJTv8NZIqGziKOdyyCzlcOFKs5DvgNh420Tg0N+SoUDn+OPepwTp8Nm0q"
    "6jjROCuxqju7OeI2DjmPNncglzisOJmywTprO4cypjrdO2w00TvbOJI0MTvzOsEzpDuwNSYyNjlmPDEtEjiVOfGwYTmSOEmq"
    "eDvlNoUwJzrYNhYe3TnZNtabgzmoOvwqjztfORUxgDirPMotnzlhPKAxGjowPB8zlTnFNtydUjmrNnIDJDmeNiQgXjvbNekt"
    "Zzn9NTOgszm6NXSkATqvNTOkTjrVNTmeezoTNkAg1jtdNdY0WzrDNq0kRTnOOc6q5DhPOSuwgjjHOXGuOzrqO40xvjktPDIw"
    "iTiIPPIoDztRO3g1KzlYNk4WjjjzNy2wHDmOPPsvuDuaOaY0vTjyOnSfzDgEO0Sj1zgfOwOl3ThDOzii/DiOOzAkcDlWOhIo"
    "gDlOOiwojTlGOuEn+zkcOuMnKzuEOdIsjzg2Nweu0jgLNh2mCDkeNhOfYTldOoUoLDthOgYxgDj/NVOtFznpO70oTzihNz2x"
    "zzh+OAGwdjgWPDAe+TkBO8ctmTlAOZmnkjmBO2Esajo5OfKi8jmSOd+fuTq+Oa8ohjhTPFIjDTmiONOtMDpoOwswsjnnO04u"
    "UjqBOk8teDv5OegxuDq1OoYvhztPOo40RTroOdYmyTgrOCyuyDhEOemxDTlCOVWwmjgROfqyGjl8NfyoqjkVNV6qKToHNSmq"
    "jTozNeKn0TqLNdCb7zqjNlEs2TsqOEk0pjpxNy8pTDqWNzMk3DmQN9GBdDlnN7SfIzkyN7uh7Dj+NqOj2jsqOMg2EDlLOTav"
    "izhQODGxgDhWOfeyUjh6OVCyhDhgOUSy/ThcOSWuPDiFOauyNTiNOfiw8DiQNmoYwTipNvOloTi/NvmqkTpGNtElxjoQNhkm"
    "djTpNeggJzXxNeggfTRXNegggjPhNeggbjR7Nugg3DlQNpUdNDpVNpUd3Tm/NZUdhDlKNpUd2zngNpUd"
)


def template() -> np.ndarray:
    """(478, 3) float32 template in Haar-box units."""
    raw = base64.b64decode("".join(_DATA))
    return np.frombuffer(raw, dtype=np.float16).reshape(478, 3).astype(np.float32)
